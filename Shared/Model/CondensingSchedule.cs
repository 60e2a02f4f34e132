namespace CondenseCluster.Shared.Model;

/// <summary>
/// When learned group convolutions condense (DESIGN.md §1.1): stage k starts at training progress k / (2(C-1)),
/// the last drop happens at progress 0.5, and stages only ever move forward.
/// </summary>
public static class CondensingSchedule
{
    /// <summary>Training progress t / T of global step <paramref name="step"/> out of <paramref name="totalSteps"/>.</summary>
    public static double Progress(long step, long totalSteps) => (double)step / totalSteps;

    /// <summary>The smallest i in [0, C-2] with 2p &lt; (i+1)/(C-1), else C-1.</summary>
    public static int StageAt(double progress, int condenseFactor)
    {
        for (int i = 0; i < condenseFactor - 1; i++)
            if (progress * 2 < (double)(i + 1) / (condenseFactor - 1))
                return i;
        return condenseFactor - 1;
    }

    /// <summary>
    /// The stage a layer at <paramref name="currentStage"/> moves to at <paramref name="progress"/>, or null when it stays.
    /// A move is one drop, however many boundaries it crosses (as the official code does); progress 0 never moves.
    /// </summary>
    public static int? NextStage(int currentStage, double progress, int condenseFactor)
    {
        if (progress <= 0) return null;
        int stage = StageAt(progress, condenseFactor);
        return stage > currentStage ? stage : null;
    }

    /// <summary>Input columns each group drops per stage: in / C.</summary>
    public static int ColumnsPerDrop(int inChannels, int condenseFactor) => inChannels / condenseFactor;
}
