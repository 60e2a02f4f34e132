namespace CondenseCluster.Shared.Training;

/// <summary>The official schedule: cosine annealing per iteration, lr = ½·lr0·(1 + cos(π·t/T)).</summary>
public static class LearningRate
{
    public static double Cosine(double initial, long step, long totalSteps) =>
        0.5 * initial * (1 + Math.Cos(Math.PI * step / totalSteps));
}
