"""Pictures of runs and models; every file is written atomically, no display needed.

- :mod:`.attention`: every map of ``ReIDOutput.attention`` over a tracklet's frames, by name
  and shape (any model);
- :mod:`.ranking`: a query beside its ranked results (also used for search results);
- :mod:`.curves`: training curves and CMC curves (matplotlib, Agg backend);
- :mod:`.ablation`: an ablation table's rows with intervals and paired differences;
- :mod:`.report`: ``report.html`` of a run directory (``videoreid visualize``);
- :mod:`.naming`: cameras and identities as each dataset's files name them;
- :mod:`.canvas`: the raster helpers (fonts, stacking, palette PNG / JPEG encoding).
"""
