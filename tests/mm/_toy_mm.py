"""A tiny mmengine model and dataset (registered in mmengine's root registries) so tools/mm_train.py can be
killed and resumed in seconds; the Runner, CheckpointHook, resume and visionattn.mm's loading/saving are the real
ones. Imported through the test config's ``custom_imports``."""
import torch
from mmengine.dataset import BaseDataset
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, MODELS


@MODELS.register_module(force=True)
class VisionAttnToyModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))

    def forward(self, inputs, labels=None, mode="tensor", **meta):  # meta: sample_idx from BaseDataset
        out = self.net(inputs)
        if mode == "loss":
            return dict(loss=torch.nn.functional.mse_loss(out, labels))
        return out


@DATASETS.register_module(force=True)
class VisionAttnToyDataset(BaseDataset):
    def __init__(self, size=24, **kwargs):
        self.size = size
        super().__init__(serialize_data=False, **kwargs)

    def load_data_list(self):
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(self.size, 8, generator=generator)
        y = x.sum(dim=1, keepdim=True).sin()
        return [dict(inputs=x[i], labels=y[i]) for i in range(self.size)]
