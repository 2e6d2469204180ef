# SG-Former-M: Mask R-CNN + FPN, 1x, COCO.
# Published result: 48.2 box AP / 43.6 mask AP (51M parameters) (paper, arXiv 2308.12216, via the
#   MambaOut paper's tables; not re-verified). No official detection code or config was released.
# Settings: the base config's AdamW (lr 1e-4, weight decay 0.05) schedule, as the paper family (PVT / Swin);
#   drop path 0.3, our choice. Any input size: the position embedding is resized and the 7x7
#   windows padded per image (visionattn/models/sgformer.py).
# Weights: the official ImageNet-1K checkpoints are files in a Google Drive folder (no direct links, no licence
#   upstream): https://drive.google.com/drive/folders/1ZJDEwxDffqqqzBC2SzhOkpWpGRweDsE4
#   Download SG-Former-M and set checkpoint='/path/to/file' (the official .pth.tar, EMA weights are taken).
_base_ = ['../_base_/mask_rcnn_fpn_1x_coco.py']

model = dict(
    backbone=dict(
        model_name='sgformer_m',
        drop_path_rate=0.3,
        # the stage outputs are already LayerNormed (the official norm1..norm4): no extra output norms
        out_norms=False,
        checkpoint=None),
    neck=dict(in_channels=[64, 128, 256, 512]))

# the position embedding (learned on the 56x56 grid, resized to each input) is kept out of weight decay, as the
# norms are in the base config
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'pos_embed': dict(decay_mult=0.)}))
