# DaViT-Small: Mask R-CNN + FPN, 3x, COCO.
# Published result: 49.5 box AP / 44.3 mask AP.
# Settings: dingmyu/davit README.md (only the Tiny config is shipped: drop path 0.3 for Small is our choice, as
#   Swin-S).
_base_ = ['../_base_/mask_rcnn_fpn_3x_coco.py']

model = dict(
    backbone=dict(
        model_name='davit_small',
        drop_path_rate=0.3,
        pretrained=True,
        model_kwargs=dict()),
    neck=dict(in_channels=[96, 192, 384, 768]))

# The official DaViT configs use plain AdamW, without paramwise weight-decay rules.
optim_wrapper = dict(paramwise_cfg=dict(_delete_=True))
