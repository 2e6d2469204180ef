# GC ViT-Small: Cascade Mask R-CNN + FPN, 3x, COCO.
# Published result: 52.4 box AP / 45.4 mask AP (NVlabs/GCVit detection/README.md).
# Settings: no official small config shipped: the tiny config with drop path 0.3 (the ImageNet value), our choice.
_base_ = ['../_base_/cascade_mask_rcnn_fpn_3x_coco.py']

model = dict(
    backbone=dict(
        model_name='gc_vit_small',
        drop_path_rate=0.3,
        checkpoint='https://huggingface.co/nvidia/GCViT/resolve/main/gcvit_1k_small.pth.tar',
        model_kwargs=dict(
            window_size=(24, 24, 24, 24),
            # The official detection backbone max-pools the global query in stages 0-2 at window 24.
            query_pool=(True, True, True, False),
        )),
    neck=dict(in_channels=[96, 192, 384, 768]))
