namespace CondenseCluster.Shared.Training;

/// <summary>The summary statistics runs and benchmark suites quote: machines are shared and noisy, so medians.</summary>
public static class Statistics
{
    /// <summary>The middle value; the mean of the two middle values of an even count; 0 for none (a run that took no step).</summary>
    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0) return 0;
        int middle = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
    }
}
