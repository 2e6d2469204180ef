# ViG-H-Tiny: Cascade Mask R-CNN + FPN, 3x, COCO.
# Published result: none official.
# Settings: hustvl/ViG has no detection/segmentation code or configs and its README gives no COCO/ADE20K numbers
#   (the paper, arXiv 2405.18425, reports some; not verified here): Swin-style settings, drop path as Swin-T.
_base_ = ['../_base_/cascade_mask_rcnn_fpn_3x_coco.py']

model = dict(
    backbone=dict(
        model_name='vig_h_tiny',
        drop_path_rate=0.2,
        pretrained=True,
        model_kwargs=dict()),
    neck=dict(in_channels=[96, 192, 384, 768]))
