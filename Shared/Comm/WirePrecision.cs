namespace CondenseCluster.Shared.Comm;

/// <summary>
/// How an all-reduce's values cross the ring. <see cref="Float16"/> halves the bytes: each message is scaled by a power
/// of two so that it cannot overflow, sent as IEEE half floats and summed in float32 on arrival; every rank still ends
/// with the same bits. The sum is rounded to about 3 significant digits (relative error up to 2^-11 per addition).
/// </summary>
public enum WirePrecision { Float32, Float16 }
