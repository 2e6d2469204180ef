# Agent-Swin-B: UperNet, 512x512, 160k iterations, ADE20K; agent grids of upernet_agent_swin_b_9-12-14-7.py.
# Published result: 48.73 mIoU.
# Settings: LeapLabTHU/Agent-Attention downstream/segmentation/configs/agent_swin/upernet_agent_swin_b_9-12-14-7.py
#   (mmseg 0.x; Swin's UperNet schedule, AdamW lr 6e-5 / weight decay 0.01).
_base_ = ['../_base_/upernet_512x512_160k_ade20k.py']

model = dict(
    backbone=dict(
        model_name='agent_swin_b',
        drop_path_rate=0.5,
        checkpoint='https://cloud.tsinghua.edu.cn/f/4fcd2d0114bb490483c3/?dl=1',
        model_kwargs=dict(agent_shapes=((9, 9), (12, 12), (14, 14), (7, 7)))),
    decode_head=dict(in_channels=[128, 256, 512, 1024], num_classes=150),
    auxiliary_head=dict(in_channels=512, num_classes=150))
