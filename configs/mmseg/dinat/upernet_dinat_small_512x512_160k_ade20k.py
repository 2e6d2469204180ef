# DiNAT-Small: UperNet, 512x512, 160k iterations, ADE20K.
# Published result: 48.9 mIoU single-scale / 49.9 multi-scale.
# Settings: SHI-Labs/Neighborhood-Attention-Transformer: detection/DiNAT.md, segmentation/DiNAT.md; configs
#   segmentation/configs/dinat/upernet_dinat_small_512x512_160k_ade20k.py.
_base_ = ['../_base_/upernet_512x512_160k_ade20k.py']

model = dict(
    backbone=dict(
        model_name='dinat_small',
        drop_path_rate=0.5,
        checkpoint='https://shi-labs.com/projects/dinat/checkpoints/imagenet1k/dinat_small_in1k_224.pth',
        model_kwargs=dict(
            dilations=[[1, 16, 1], [1, 4, 1, 8], [1, 2, 1, 3, 1, 4] * 3, [1, 2, 1, 2, 1]],
        )),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))
