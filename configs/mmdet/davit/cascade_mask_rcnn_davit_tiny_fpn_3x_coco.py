# DaViT-Tiny: Cascade Mask R-CNN + FPN, 3x, COCO.
# Published result: none published (DaViT reports Mask R-CNN and RetinaNet only).
# Settings: no official cascade config: Mask R-CNN 3x settings on the NAT/Swin cascade heads.
_base_ = ['../_base_/cascade_mask_rcnn_fpn_3x_coco.py']

model = dict(
    backbone=dict(
        model_name='davit_tiny',
        drop_path_rate=0.2,
        pretrained=True,
        model_kwargs=dict()),
    neck=dict(in_channels=[96, 192, 384, 768]))
