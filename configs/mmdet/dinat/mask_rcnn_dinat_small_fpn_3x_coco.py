# DiNAT-Small: Mask R-CNN + FPN, 3x, COCO.
# Published result: 49.3 box AP / 44.0 mask AP.
# Settings: SHI-Labs/Neighborhood-Attention-Transformer: detection/DiNAT.md, segmentation/DiNAT.md; configs
#   detection/configs/dinat/mask_rcnn_dinat_small_3x_coco.py.
_base_ = ['../_base_/mask_rcnn_fpn_3x_coco.py']

model = dict(
    backbone=dict(
        model_name='dinat_small',
        drop_path_rate=0.35,
        checkpoint='https://shi-labs.com/projects/dinat/checkpoints/imagenet1k/dinat_small_in1k_224.pth',
        model_kwargs=dict(
            dilations=[[1, 28, 1], [1, 7, 1, 14], [1, 3, 1, 5, 1, 7] * 3, [1, 3, 1, 3, 1]],
        )),
    neck=dict(in_channels=[96, 192, 384, 768]))
