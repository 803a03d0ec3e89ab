print("ddp-train: not built yet")
