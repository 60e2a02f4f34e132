namespace CondenseCluster.Shared.Comm;

/// <summary>
/// How an all-reduce's values cross the ring. <see cref="Float16"/> halves the bytes: each frame is scaled by a power
/// of two so that it cannot overflow, sent as IEEE half floats and summed in float32 on arrival; every rank still ends
/// with the same bits. The sum is rounded to about 3 significant digits (relative error up to 2^-11 per addition).
/// </summary>
public enum WirePrecision { Float32, Float16 }

/// <summary>The names a user gives a <see cref="WirePrecision"/> on a command line: fp32 and fp16.</summary>
public static class WirePrecisionNames
{
    public const string Choices = "fp32 or fp16";

    public static string Name(this WirePrecision precision) => precision == WirePrecision.Float16 ? "fp16" : "fp32";

    /// <summary>The precision <paramref name="name"/> stands for; null for anything but fp32 and fp16.</summary>
    public static WirePrecision? Parse(string name) => name switch
    {
        "fp32" => WirePrecision.Float32,
        "fp16" => WirePrecision.Float16,
        _ => null,
    };
}
