# Mask R-CNN + FPN on COCO, 1x schedule (12 epochs, steps at 8 and 11, 1000-iteration linear warm-up), single-scale
# training (1333x800, random flip) and AdamW (lr 1e-4, betas 0.9/0.999, weight decay 0.05), batch 16 (8x2): the 1x
# setting of Swin and of the PVT / SG-Former / Agent-attention papers. mmdet 3.3's own port of it is its Swin-T 1x
# config, which this inherits; only the backbone is swapped for ours.
_base_ = ['mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py']

custom_imports = dict(imports=['visionattn.mm'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='VisionAttnBackbone',
        model_name=None,  # set by each config
        out_indices=(0, 1, 2, 3),
        out_norms=True,
        frozen_stages=-1,
        norm_eval=False,
        with_cp=False,
        drop_path_rate=0.2,
        pretrained=False,
        checkpoint=None,
        model_kwargs=dict()),
    neck=dict(in_channels=[96, 192, 384, 768]))

# No weight decay on relative position biases and norms, as in the 3x base. Parameter names inside
# VisionAttnBackbone are timm's, so these keys match.
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            'rpb': dict(decay_mult=0.),
            'relative_position_bias_table': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.),
        }))

auto_scale_lr = dict(enable=False, base_batch_size=16)
