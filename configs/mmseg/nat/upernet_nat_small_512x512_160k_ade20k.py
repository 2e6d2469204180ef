# NAT-Small: UperNet, 512x512, 160k iterations, ADE20K.
# Published result: 48.0 mIoU single-scale / 49.5 multi-scale.
# Settings: SHI-Labs/Neighborhood-Attention-Transformer: detection/NAT.md, segmentation/NAT.md; configs
#   segmentation/configs/nat/upernet_nat_small_512x512_160k_ade20k.py.
_base_ = ['../_base_/upernet_512x512_160k_ade20k.py']

model = dict(
    backbone=dict(
        model_name='nat_small',
        drop_path_rate=0.5,
        checkpoint='https://shi-labs.com/projects/nat/checkpoints/CLS/nat_small.pth',
        model_kwargs=dict()),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))
