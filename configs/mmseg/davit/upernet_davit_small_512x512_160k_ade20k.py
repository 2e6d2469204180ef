# DaViT-Small: UperNet, 512x512, 160k iterations, ADE20K.
# Published result: 48.8 mIoU.
# Settings: dingmyu/davit README.md (only the Tiny config is shipped; drop path 0.3 as for Tiny).
_base_ = ['../_base_/upernet_512x512_160k_ade20k.py']

model = dict(
    backbone=dict(
        model_name='davit_small',
        drop_path_rate=0.3,
        pretrained=True,
        model_kwargs=dict()),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))

# The official DaViT configs use plain AdamW, without paramwise weight-decay rules.
optim_wrapper = dict(paramwise_cfg=dict(_delete_=True))
