# GC ViT-Tiny: Cascade Mask R-CNN + FPN, 3x, COCO.
# Published result: 51.6 box AP / 44.6 mask AP.
# Settings: NVlabs/GCVit: detection/README.md, detection/configs/gcvit/cascade_mask_rcnn_gcvit_tiny_3x_coco.py
#   (window 24 in every stage).
_base_ = ['../_base_/cascade_mask_rcnn_fpn_3x_coco.py']

model = dict(
    backbone=dict(
        model_name='gc_vit_tiny',
        drop_path_rate=0.2,
        checkpoint='https://huggingface.co/nvidia/GCViT/resolve/main/gcvit_1k_tiny.pth.tar',
        model_kwargs=dict(
            window_size=(24, 24, 24, 24),
            # The official detection backbone max-pools the global query in stages 0-2 at window 24.
            query_pool=(True, True, True, False),
        )),
    neck=dict(in_channels=[64, 128, 256, 512]))
