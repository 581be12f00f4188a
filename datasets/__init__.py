"""Data: everything that reads, builds or writes samples and their files (docs/data.md). A new
dataset, reader, sampler, label kind or data-preparation engine goes here.

    datasets.sample            the sample contract: Frame, image planes, radar features, eval sample
    datasets.build             build_dataset(cfg, split): the one builder from the config
    datasets.nuscenes_dataset  RadarCameraDataset ('train' / 'eval') over an info file
    datasets.frames            single frames: your own image + radar + K, one nuScenes sample, outputs
    datasets.samplers          the resumable distributed sampler of the training loader
    datasets.workers           how loader worker processes start
    datasets.io                file readers (errors naming the file) and the uint16-mm depth PNG
    datasets.geometry          point transforms, projection, rasterisation (released semantics)
    datasets.augment           the camera-intrinsics disruption
    datasets.occlusion         the LiDAR occlusion filter
    datasets.infos             info files from a devkit NuScenes, and their readers
    datasets.seg_masks         semantic masks from an ADE20K segmenter (tools/gen_seg_masks.py)
    datasets.lidar_sweeps      LiDAR sweeps around a key frame, moving-object boxes
    datasets.dense_labels      prior-work dense labels from accumulated sweeps (one frame)
    datasets.label_builder     building them for an info file (tools/make_dense_labels.py)
    datasets.label_maps        reading label maps as training labels (data.label_kind)
    datasets.radar_sweeps      multi-sweep radar input (data.radar_sweeps)
    datasets.synthetic         the procedural nuScenes-format world
"""
