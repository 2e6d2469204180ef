# GC ViT-Tiny: UperNet, 512x512, 160k iterations, ADE20K.
# Published result: none official (no segmentation code in NVlabs/GCVit; a PapersWithCode export lists 46.5 mIoU,
#   unverified).
# Settings: no official config: Swin-style UperNet settings; window 16 in every stage (tiles 512x512 crops
#   exactly), our choice.
_base_ = ['../_base_/upernet_512x512_160k_ade20k.py']

model = dict(
    backbone=dict(
        model_name='gc_vit_tiny',
        drop_path_rate=0.3,
        checkpoint='https://huggingface.co/nvidia/GCViT/resolve/main/gcvit_1k_tiny.pth.tar',
        model_kwargs=dict(
            window_size=(16, 16, 16, 16),
        )),
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150),
    auxiliary_head=dict(in_channels=256, num_classes=150))
