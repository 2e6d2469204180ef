# NAT-Small: Mask R-CNN + FPN, 3x, COCO.
# Published result: 48.4 box AP / 43.2 mask AP.
# Settings: SHI-Labs/Neighborhood-Attention-Transformer: detection/NAT.md, segmentation/NAT.md; configs
#   detection/configs/nat/mask_rcnn_nat_small_3x_coco.py.
_base_ = ['../_base_/mask_rcnn_fpn_3x_coco.py']

model = dict(
    backbone=dict(
        model_name='nat_small',
        drop_path_rate=0.35,
        checkpoint='https://shi-labs.com/projects/nat/checkpoints/CLS/nat_small.pth',
        model_kwargs=dict()),
    neck=dict(in_channels=[96, 192, 384, 768]))
