"""Model families; importing this package registers them in timm."""
