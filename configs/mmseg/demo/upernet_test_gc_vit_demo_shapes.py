# Demo, step 2 of 2: UperNet on the built-in shapes data (ADE20K layout, 5 shape classes + background, 128x128,
# 160 train / 40 val images) with the backbone initialised from the main job's checkpoint (step 1:
# `python tools/train.py`, a small GC ViT, `test_gc_vit`, trained on the demo classification shapes), evaluated with
# IoUMetric (mIoU).
#
#   python tools/train.py                                                              # step 1, writes the checkpoint
#   python tools/mm_train.py configs/mmseg/demo/upernet_test_gc_vit_demo_shapes.py --work-dir runs/seg
#
# Prediction pictures (segmentation overlays on val images, drawn by mmseg's SegLocalVisualizer: ground truth left,
# prediction right) go to <work-dir>/<timestamp>/vis_data/vis_image/ during the final evaluation.
# BN instead of SyncBN: single process on CPU (2-process torchrun runs keep per-process statistics).
_base_ = ['mmseg::_base_/models/upernet_r50.py', 'mmseg::_base_/default_runtime.py']

custom_imports = dict(imports=['visionattn.mm'], allow_failed_imports=False)

# tools/mm_train.py and tools/mm_test.py point data_root at visionattn.data.demo.ensure_demo('ade')
demo_data = 'ade'
data_root = 'demo_ade/'
classes = ('background', 'circle', 'square', 'triangle', 'star', 'ring')
metainfo = dict(classes=classes,
                palette=[[0, 0, 0], [220, 20, 60], [0, 128, 255], [0, 200, 0], [255, 200, 0], [160, 0, 200]])

# background covers 75-95% of the pixels: down-weighted, or a short run learns to predict only background
class_weight = [0.1, 1.0, 1.0, 1.0, 1.0, 1.0]
norm_cfg = dict(type='BN', requires_grad=True)
crop_size = (128, 128)
# The main job's best checkpoint, relative to the repository root (or the working directory). tools/mm_train.py
# stops with a message to run `python tools/train.py` first when it does not exist.
main_job_checkpoint = 'output/train/demo_main/model_best.pth.tar'
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='VisionAttnBackbone',
        model_name='test_gc_vit',
        drop_path_rate=0.0,
        checkpoint=main_job_checkpoint),
    decode_head=dict(in_channels=[32, 64, 128, 256], channels=64, num_classes=len(classes), norm_cfg=norm_cfg,
                     loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
                                      class_weight=class_weight)),
    auxiliary_head=dict(in_channels=128, channels=32, num_classes=len(classes), norm_cfg=norm_cfg,
                        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4,
                                         class_weight=class_weight)))

# The shapes data is stored as ADE20K is (jpg images, png label maps with 0 = background). ADE20K configs set
# reduce_zero_label=True, which ignores label 0; here background is kept as class 0 instead: with 75-95% of the
# pixels ignored and only the shape identity left to learn, a from-scratch model stays at chance level for the
# few hundred iterations a CPU demo can afford, while with background the loss falls visibly.
dataset_type = 'BaseSegDataset'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=crop_size, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=False),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        metainfo=metainfo,
        data_root=data_root,
        img_suffix='.jpg',
        seg_map_suffix='.png',
        reduce_zero_label=False,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        metainfo=metainfo,
        data_root=data_root,
        img_suffix='.jpg',
        seg_map_suffix='.png',
        reduce_zero_label=False,
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

max_iters = 1600  # 0.27 s of one core per iteration (measured): ~7-8 minutes on 2 idle cores
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.), 'relative_position_bias_table': dict(decay_mult=0.)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', eta_min=1e-5, power=1.0, begin=30, end=max_iters, by_epoch=False),
]
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook', draw=True, interval=4))
visualizer = dict(type='SegLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')], name='visualizer', alpha=0.6)
randomness = dict(seed=0)
