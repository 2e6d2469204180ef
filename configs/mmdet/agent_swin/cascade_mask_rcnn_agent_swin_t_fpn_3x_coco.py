# Agent-Swin-T: Cascade Mask R-CNN + FPN, 3x, COCO; agent grids 9-12-14-7 (the official downstream setting).
# Published result: 51.4 box AP / 44.5 mask AP.
# Settings: LeapLabTHU/Agent-Attention downstream/detection/configs/agent_swin/agent_swin_t_crcnn_3x_9-12-14-7.py
#   (official: mmdet 2.x, multi-scale + crop augmentation, AdamW lr 1e-4 / weight decay 0.05).
_base_ = ['../_base_/cascade_mask_rcnn_fpn_3x_coco.py']

model = dict(
    backbone=dict(
        model_name='agent_swin_t',
        drop_path_rate=0.1,
        out_norms=True,  # the official backbone's norm0..3
        checkpoint='https://cloud.tsinghua.edu.cn/f/a2ddc1190c224f768a41/?dl=1',
        model_kwargs=dict(agent_shapes=((9, 9), (12, 12), (14, 14), (7, 7)))),
    neck=dict(in_channels=[96, 192, 384, 768]))
