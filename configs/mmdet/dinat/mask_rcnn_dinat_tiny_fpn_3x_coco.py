# DiNAT-Tiny: Mask R-CNN + FPN, 3x, COCO.
# Published result: 48.6 box AP / 43.5 mask AP.
# Settings: SHI-Labs/Neighborhood-Attention-Transformer: detection/DiNAT.md, segmentation/DiNAT.md; configs
#   detection/configs/dinat/mask_rcnn_dinat_tiny_3x_coco.py.
_base_ = ['../_base_/mask_rcnn_fpn_3x_coco.py']

model = dict(
    backbone=dict(
        model_name='dinat_tiny',
        drop_path_rate=0.2,
        checkpoint='https://shi-labs.com/projects/dinat/checkpoints/imagenet1k/dinat_tiny_in1k_224.pth',
        model_kwargs=dict(
            dilations=[[1, 28, 1], [1, 7, 1, 14], [1, 3, 1, 5, 1, 7] * 3, [1, 3, 1, 3, 1]],
        )),
    neck=dict(in_channels=[64, 128, 256, 512]))
