# STViT-Base (SViT-B): Mask R-CNN + FPN, 3x (multi-scale), COCO.
# Published result: the paper (arXiv 2211.11167, Tables on COCO) reports per-variant numbers; they were not read
#   for this config [verify]. Abstract / README: 53.9 box AP / 46.8 mask AP (model and detector unstated,
#   probably the large model with Cascade Mask R-CNN 3x).
# Settings: no official detection code (hhb072/STViT is classification only); the schedule is the base config's
#   (Swin-style AdamW), drop path 0.4 our choice. Weights: the official stvit-base-224.pth from the Google Drive
#   folder of the README (timm cannot download from a Drive folder): put it under checkpoints/.
_base_ = ['../_base_/mask_rcnn_fpn_3x_coco.py']

model = dict(
    backbone=dict(
        model_name='stvit_base',
        drop_path_rate=0.4,
        checkpoint='checkpoints/stvit-base-224.pth',
        # BatchNorm sits inside every block (before the MLP) and in the stem / downsamplers. At 2 images per GPU its
        # batch statistics are noise, so the ImageNet running statistics are frozen (norm_eval=True; the affine
        # weights still train). Our choice: the official repository has no detection code. SyncBN (cfg.sync_bn =
        # 'torch') over 16 images of ~1333x800 is the alternative; frozen statistics need no distributed run and
        # behave the same at any batch size.
        norm_eval=True,
        model_kwargs=dict()),
    neck=dict(in_channels=[96, 192, 384, 512]))
