# DiNAT-Tiny: Cascade Mask R-CNN + FPN, 3x, COCO.
# Published result: 52.2 box AP / 45.1 mask AP.
# Settings: SHI-Labs/Neighborhood-Attention-Transformer: detection/DiNAT.md, segmentation/DiNAT.md; configs
#   detection/configs/dinat/cascade_mask_rcnn_dinat_tiny_3x_coco.py.
_base_ = ['../_base_/cascade_mask_rcnn_fpn_3x_coco.py']

model = dict(
    backbone=dict(
        model_name='dinat_tiny',
        drop_path_rate=0.3,
        checkpoint='https://shi-labs.com/projects/dinat/checkpoints/imagenet1k/dinat_tiny_in1k_224.pth',
        model_kwargs=dict(
            dilations=[[1, 28, 1], [1, 7, 1, 14], [1, 3, 1, 5, 1, 7] * 3, [1, 3, 1, 3, 1]],
        )),
    neck=dict(in_channels=[64, 128, 256, 512]))
