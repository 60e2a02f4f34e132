namespace CondenseCluster.Bench;

/// <summary>The summary statistics the suites quote: this machine is shared and noisy, so medians.</summary>
public static class Statistics
{
    /// <summary>The middle value; the mean of the two middle values of an even count.</summary>
    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0) throw new ArgumentException("the median of no values");
        int middle = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
    }
}
