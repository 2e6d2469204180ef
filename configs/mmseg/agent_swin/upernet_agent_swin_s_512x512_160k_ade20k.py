# Agent-Swin-S: UperNet, 512x512, 160k iterations, ADE20K; agent grids of upernet_agent_swin_s_9-12-14-7.py.
# Published result: 48.08 mIoU.
# Settings: LeapLabTHU/Agent-Attention downstream/segmentation/configs/agent_swin/upernet_agent_swin_s_9-12-14-7.py
#   (mmseg 0.x; Swin's UperNet schedule, AdamW lr 6e-5 / weight decay 0.01).
_base_ = ['../_base_/upernet_512x512_160k_ade20k.py']

model = dict(
    backbone=dict(
        model_name='agent_swin_s',
        drop_path_rate=0.3,
        checkpoint='https://cloud.tsinghua.edu.cn/f/f607172c9fea4d6e99bb/?dl=1',
        # the official Swin-S file uses 7x7 in stage 3, despite its name
        model_kwargs=dict(agent_shapes=((9, 9), (12, 12), (7, 7), (7, 7)))),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))
