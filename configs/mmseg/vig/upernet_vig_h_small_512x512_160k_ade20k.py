# ViG-H-Small: UperNet, 512x512, 160k iterations, ADE20K.
# Published result: none official.
# Settings: hustvl/ViG has no detection/segmentation code or configs and its README gives no COCO/ADE20K numbers
#   (the paper, arXiv 2405.18425, reports some; not verified here): Swin-style settings, drop path as Swin-S.
_base_ = ['../_base_/upernet_512x512_160k_ade20k.py']

model = dict(
    backbone=dict(
        model_name='vig_h_small',
        drop_path_rate=0.3,
        pretrained=True,
        model_kwargs=dict()),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))
