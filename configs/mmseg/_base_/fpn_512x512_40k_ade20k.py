# Semantic FPN on ADE20K, 512x512 crops, 40k iterations, batch 16 (8x2), AdamW lr 2e-4 / weight decay 1e-4, poly
# decay (power 0.9, min lr 0): the PVT / Agent-PVT Semantic FPN setting (mmseg 0.x). mmseg 1.2's Semantic FPN
# ADE20K config (4x4 = 16 images per step) is inherited; schedule and optimizer follow PVT.
_base_ = ['mmseg::sem_fpn/fpn_r50_4xb4-160k_ade20k-512x512.py']

custom_imports = dict(imports=['visionattn.mm'], allow_failed_imports=False)

model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='VisionAttnBackbone',
        model_name=None,  # set by each config
        out_indices=(0, 1, 2, 3),
        out_norms=False,
        frozen_stages=-1,
        norm_eval=False,
        with_cp=False,
        drop_path_rate=0.1,
        pretrained=False,
        checkpoint=None,
        model_kwargs=dict()),
    neck=dict(in_channels=[64, 128, 320, 512]),
    decode_head=dict(num_classes=150))

optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=0.0002, weight_decay=0.0001), clip_grad=None)
param_scheduler = [dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=40000, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=40000, val_interval=4000)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4000))
