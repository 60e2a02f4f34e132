namespace CondenseCluster.Shared.Model;

/// <summary>Applies the condensing schedule to every learned group convolution of a model (single-node training).</summary>
public static class ModelCondensing
{
    /// <summary>Moves each layer whose stage is behind <paramref name="progress"/> forward with one drop; returns how many moved.</summary>
    public static int Apply(CondenseNet model, double progress)
    {
        int moved = 0;
        foreach (var (_, layer) in model.LearnedLayers)
        {
            if (CondensingSchedule.NextStage(layer.Stage, progress, layer.CondenseFactor) is int stage)
            {
                layer.Drop(stage);
                moved++;
            }
        }
        return moved;
    }
}
