"""nn.Modules shared by the model families, thin over ``visionattn.ops``."""
