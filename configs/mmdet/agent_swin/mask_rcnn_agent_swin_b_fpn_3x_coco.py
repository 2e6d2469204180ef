# Agent-Swin-B: Mask R-CNN + FPN, 3x, COCO; agent grids 9-12-14-7 (the official downstream setting).
# Published result: none (no official result for this setting).
# Settings: no official config; the official Mask R-CNN 3x settings of the other Agent-Swin sizes
#   (official: mmdet 2.x, multi-scale + crop augmentation, AdamW lr 1e-4 / weight decay 0.05).
_base_ = ['../_base_/mask_rcnn_fpn_3x_coco.py']

model = dict(
    backbone=dict(
        model_name='agent_swin_b',
        drop_path_rate=0.4,
        out_norms=True,  # the official backbone's norm0..3
        checkpoint='https://cloud.tsinghua.edu.cn/f/4fcd2d0114bb490483c3/?dl=1',
        model_kwargs=dict(agent_shapes=((9, 9), (12, 12), (14, 14), (7, 7)))),
    neck=dict(in_channels=[128, 256, 512, 1024]))
