# Agent-PVT-S: Mask R-CNN + FPN, 1x, COCO; agent grids 12-16-28-28 (the official downstream setting).
# Published result: 44.5 box AP / 41.2 mask AP.
# Settings: LeapLabTHU/Agent-Attention downstream/detection/configs/agent_pvt/agent_pvt_s_mrcnn_1x_12-16-28-28.py
#   (mmdet 2.x; single-scale 1x, AdamW lr 1e-4 / weight decay 1e-4, raw stage outputs).
_base_ = ['../_base_/mask_rcnn_fpn_1x_coco.py']

model = dict(
    backbone=dict(
        model_name='agent_pvt_small',
        drop_path_rate=0.2,
        out_norms=False,
        checkpoint='https://cloud.tsinghua.edu.cn/f/36b8be9a8863456685a3/?dl=1',
        model_kwargs=dict(agent_shapes=((12, 12), (16, 16), (28, 28), (28, 28)))),
    neck=dict(in_channels=[64, 128, 320, 512]))

optim_wrapper = dict(optimizer=dict(weight_decay=0.0001))
