# SG-Former-B: UperNet, 512x512, 160k iterations, ADE20K.
# Published result: 52.0 mIoU single-scale / 52.7 multi-scale (109M parameters, 1304 GFLOPs)
#   (paper, arXiv 2308.12216, via the MambaOut paper's tables; not re-verified).
#   No official segmentation code or config was released.
# Settings: the base config's Swin-style UperNet schedule (AdamW lr 6e-5, weight decay 0.01, poly decay), as
#   the paper family; drop path 0.4, our choice.
# Weights: the official ImageNet-1K checkpoints are files in a Google Drive folder (no direct links, no licence
#   upstream): https://drive.google.com/drive/folders/1ZJDEwxDffqqqzBC2SzhOkpWpGRweDsE4
#   Download SG-Former-B and set checkpoint='/path/to/file' (the official .pth.tar, EMA weights are taken).
_base_ = ['../_base_/upernet_512x512_160k_ade20k.py']

model = dict(
    backbone=dict(
        model_name='sgformer_b',
        drop_path_rate=0.4,
        # the stage outputs are already LayerNormed (the official norm1..norm4): no extra output norms
        out_norms=False,
        checkpoint=None),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))

# the position embedding (learned on the 56x56 grid, resized to each input) is kept out of weight decay, as the
# norms are in the base config
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'pos_embed': dict(decay_mult=0.)}))
