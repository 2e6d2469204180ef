# Agent-Swin-S: Cascade Mask R-CNN + FPN, 1x, COCO; agent grids 9-12-14-7 (the official downstream setting).
# Published result: none (no official result for this setting).
# Settings: no official config; the official Cascade Mask R-CNN 1x settings of the other Agent-Swin sizes
#   (official: mmdet 2.x, multi-scale + crop augmentation, AdamW lr 1e-4 / weight decay 0.05).
_base_ = ['../_base_/cascade_mask_rcnn_fpn_3x_coco.py']

model = dict(
    backbone=dict(
        model_name='agent_swin_s',
        drop_path_rate=0.1,
        out_norms=True,  # the official backbone's norm0..3
        checkpoint='https://cloud.tsinghua.edu.cn/f/f607172c9fea4d6e99bb/?dl=1',
        model_kwargs=dict(agent_shapes=((9, 9), (12, 12), (14, 14), (7, 7)))),
    neck=dict(in_channels=[96, 192, 384, 768]))

# 1x: the 3x base's multi-scale + crop augmentation for 12 epochs, steps at 8 and 11 (as the official 1x config)
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11], gamma=0.1),
]
