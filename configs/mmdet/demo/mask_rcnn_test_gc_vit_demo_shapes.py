# Demo, step 2 of 2: Mask R-CNN on the built-in shapes data (COCO format, 5 classes, 128x128, 160 train / 40 val
# images) with the backbone initialised from the main job's checkpoint (step 1: `python tools/train.py`, a small
# GC ViT, `test_gc_vit`, trained on the demo classification shapes).
#
#   python tools/train.py                                                              # step 1, writes the checkpoint
#   python tools/mm_train.py configs/mmdet/demo/mask_rcnn_test_gc_vit_demo_shapes.py --work-dir runs/det
#
# Prediction pictures (boxes and masks on the first val images, drawn by mmdet's DetLocalVisualizer) go to
# <work-dir>/<timestamp>/vis_data/vis_image/ after the final evaluation.
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py', 'mmdet::_base_/default_runtime.py']

custom_imports = dict(imports=['visionattn.mm'], allow_failed_imports=False)

# tools/mm_train.py and tools/mm_test.py point the paths below at visionattn.data.demo.ensure_demo('coco')
demo_data = 'coco'
data_root = 'demo_coco/'
classes = ('circle', 'square', 'triangle', 'star', 'ring')
metainfo = dict(classes=classes, palette=[(220, 20, 60), (0, 128, 255), (0, 200, 0), (255, 200, 0), (160, 0, 200)])

# The main job's best checkpoint, relative to the repository root (or the working directory). tools/mm_train.py
# stops with a message to run `python tools/train.py` first when it does not exist.
main_job_checkpoint = 'output/train/demo_main/model_best.pth.tar'

width = 64
model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(
        _delete_=True,
        type='VisionAttnBackbone',
        model_name='test_gc_vit',
        drop_path_rate=0.0,
        checkpoint=main_job_checkpoint),
    neck=dict(in_channels=[32, 64, 128, 256], out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(in_channels=width, fc_out_channels=256, num_classes=len(classes)),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(num_convs=2, in_channels=width, conv_out_channels=32, num_classes=len(classes))),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(
        rpn=dict(nms_pre=300, max_per_img=100),
        rcnn=dict(max_per_img=20)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type='CocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=4),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='CocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file='annotations/instances_val.json', metric=['bbox', 'segm'],
                     format_only=False)
test_evaluator = val_evaluator

max_epochs = 24  # ~960 iterations: 0.4 s of one core each (measured), ~7 minutes on 2 idle cores with the evaluation
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=40),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs, eta_min=1e-5),
]
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=10.0),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.), 'relative_position_bias_table': dict(decay_mult=0.)}))

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs, max_keep_ckpts=1),
    visualization=dict(type='DetVisualizationHook', draw=True, interval=1))
visualizer = dict(type='DetLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')], name='visualizer')
log_processor = dict(by_epoch=True, window_size=10)
randomness = dict(seed=0)
