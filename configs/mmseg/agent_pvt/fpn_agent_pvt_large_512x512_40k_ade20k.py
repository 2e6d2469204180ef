# Agent-PVT-L: Semantic FPN, 512x512, 40k iterations, ADE20K; agent grids 12-16-28-28.
# Published result: 46.52 mIoU.
# Settings: LeapLabTHU/Agent-Attention downstream/segmentation/configs/agent_pvt/fpn_agent_pvt_l_12-16-28-28.py
#   (mmseg 0.x; PVT's Semantic FPN, AdamW lr 2e-4 / weight decay 1e-4, poly 0.9).
_base_ = ['../_base_/fpn_512x512_40k_ade20k.py']

model = dict(
    backbone=dict(
        model_name='agent_pvt_large',
        drop_path_rate=0.1,
        checkpoint='https://cloud.tsinghua.edu.cn/f/040cfe0cfbbe4762ad09/?dl=1',
        model_kwargs=dict(agent_shapes=((12, 12), (16, 16), (28, 28), (28, 28)))),
    neck=dict(in_channels=[64, 128, 320, 512]))
