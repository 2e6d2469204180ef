# GC ViT-Tiny: Mask R-CNN + FPN, 3x, COCO.
# Published result: 47.9 box AP / 43.2 mask AP.
# Settings: NVlabs/GCVit: detection/README.md, detection/configs/gcvit/mask_rcnn_gcvit_tiny_3x_coco.py (window 24
#   in every stage, from the detection backbone).
_base_ = ['../_base_/mask_rcnn_fpn_3x_coco.py']

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
