# NAT-Tiny: UperNet, 512x512, 160k iterations, ADE20K.
# Published result: 47.1 mIoU single-scale / 48.4 multi-scale.
# Settings: SHI-Labs/Neighborhood-Attention-Transformer: detection/NAT.md, segmentation/NAT.md; configs
#   segmentation/configs/nat/upernet_nat_tiny_512x512_160k_ade20k.py.
_base_ = ['../_base_/upernet_512x512_160k_ade20k.py']

model = dict(
    backbone=dict(
        model_name='nat_tiny',
        drop_path_rate=0.3,
        checkpoint='https://shi-labs.com/projects/nat/checkpoints/CLS/nat_tiny.pth',
        model_kwargs=dict()),
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150),
    auxiliary_head=dict(in_channels=256, num_classes=150))
