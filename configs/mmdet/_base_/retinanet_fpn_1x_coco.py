# RetinaNet + FPN on COCO, 1x schedule (12 epochs, steps at 8 and 11), single-scale training (1333x800, random
# flip), AdamW (lr 1e-4, weight decay 1e-4), batch 16 (8x2): the PVT / Agent-PVT RetinaNet setting. mmdet 3.3's port
# of it is its PVT RetinaNet config, which this inherits; only the backbone is swapped for ours.
_base_ = ['mmdet::pvt/retinanet_pvt-t_fpn_1x_coco.py']

custom_imports = dict(imports=['visionattn.mm'], allow_failed_imports=False)

model = dict(
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
    neck=dict(in_channels=[64, 128, 320, 512]))

optim_wrapper = dict(optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, weight_decay=0.0001))
auto_scale_lr = dict(enable=False, base_batch_size=16)
