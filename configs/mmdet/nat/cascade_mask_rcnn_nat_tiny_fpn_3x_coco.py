# NAT-Tiny: Cascade Mask R-CNN + FPN, 3x, COCO.
# Published result: 51.4 box AP / 44.5 mask AP.
# Settings: SHI-Labs/Neighborhood-Attention-Transformer: detection/NAT.md, segmentation/NAT.md; configs
#   detection/configs/nat/cascade_mask_rcnn_nat_tiny_3x_coco.py.
_base_ = ['../_base_/cascade_mask_rcnn_fpn_3x_coco.py']

model = dict(
    backbone=dict(
        model_name='nat_tiny',
        drop_path_rate=0.3,
        checkpoint='https://shi-labs.com/projects/nat/checkpoints/CLS/nat_tiny.pth',
        model_kwargs=dict()),
    neck=dict(in_channels=[64, 128, 256, 512]))
