"""nuScenes radar-camera data (docs/spade.md sections 1-2); import the modules you need:

    datasets.geometry          point transforms, projection, rasterisation (released semantics)
    datasets.io                readers of images, point clouds, masks; errors naming the file
    datasets.infos             info-file records from a devkit NuScenes, and their readers
    datasets.occlusion         the LiDAR occlusion filter
    datasets.augment           the camera-intrinsics disruption
    datasets.nuscenes_dataset  RadarCameraDataset ('train' / 'eval')
    datasets.synthetic         the procedural nuScenes-format world
"""
