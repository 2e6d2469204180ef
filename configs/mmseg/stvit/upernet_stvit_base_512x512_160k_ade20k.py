# STViT-Base (SViT-B): UperNet, 512x512, 160k iterations, ADE20K.
# Published result: the paper (arXiv 2211.11167, ADE20K table) reports per-variant numbers; they were not read for
#   this config [verify]. Abstract / README: 51.9 mIoU (model unstated, probably the large model).
# Settings: no official segmentation code; Swin-style UperNet settings of the base config, drop path 0.4 our
#   choice. Weights: the official stvit-base-224.pth from the Google Drive folder of the README, under checkpoints/.
_base_ = ['../_base_/upernet_512x512_160k_ade20k.py']

# BatchNorm sits inside every block. Here the batch is 16 crops of 512x512 (8 GPUs x 2), enough for batch statistics
# when they are synchronised, so the backbone's BNs (like the decode heads') become SyncBN and keep training
# (norm_eval=False); mmengine converts every BatchNorm of the model when cfg.sync_bn is set (distributed runs only).
# Our choice, as mmseg's CNN-backbone configs do; with a single GPU set norm_eval=True instead.
sync_bn = 'torch'

model = dict(
    backbone=dict(
        model_name='stvit_base',
        drop_path_rate=0.4,
        checkpoint='checkpoints/stvit-base-224.pth',
        norm_eval=False,
        model_kwargs=dict()),
    decode_head=dict(in_channels=[96, 192, 384, 512], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))
