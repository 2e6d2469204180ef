# NAT-Tiny: Mask R-CNN + FPN, 3x, COCO.
# Published result: 47.7 box AP / 42.6 mask AP.
# Settings: SHI-Labs/Neighborhood-Attention-Transformer: detection/NAT.md, segmentation/NAT.md; configs
#   detection/configs/nat/mask_rcnn_nat_tiny_3x_coco.py.
_base_ = ['../_base_/mask_rcnn_fpn_3x_coco.py']

model = dict(
    backbone=dict(
        model_name='nat_tiny',
        drop_path_rate=0.2,
        checkpoint='https://shi-labs.com/projects/nat/checkpoints/CLS/nat_tiny.pth',
        model_kwargs=dict()),
    neck=dict(in_channels=[64, 128, 256, 512]))
