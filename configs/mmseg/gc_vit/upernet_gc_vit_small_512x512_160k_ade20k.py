# GC ViT-Small: UperNet, 512x512, 160k iterations, ADE20K.
# Published result: none official (no segmentation code in NVlabs/GCVit).
# Settings: no official config: Swin-style UperNet settings; window 16 in every stage, our choice.
_base_ = ['../_base_/upernet_512x512_160k_ade20k.py']

model = dict(
    backbone=dict(
        model_name='gc_vit_small',
        drop_path_rate=0.3,
        checkpoint='https://huggingface.co/nvidia/GCViT/resolve/main/gcvit_1k_small.pth.tar',
        model_kwargs=dict(
            window_size=(16, 16, 16, 16),
        )),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))
