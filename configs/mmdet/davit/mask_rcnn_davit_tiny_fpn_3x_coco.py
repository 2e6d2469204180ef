# DaViT-Tiny: Mask R-CNN + FPN, 3x, COCO.
# Published result: 47.4 box AP / 42.9 mask AP.
# Settings: dingmyu/davit: README.md; config mmdet/configs/davit_maskrcnn_3x_coco.py (Tiny: drop path 0.2, plain
#   AdamW without paramwise rules).
_base_ = ['../_base_/mask_rcnn_fpn_3x_coco.py']

model = dict(
    backbone=dict(
        model_name='davit_tiny',
        drop_path_rate=0.2,
        pretrained=True,
        model_kwargs=dict()),
    neck=dict(in_channels=[96, 192, 384, 768]))

# The official DaViT configs use plain AdamW, without paramwise weight-decay rules.
optim_wrapper = dict(paramwise_cfg=dict(_delete_=True))
