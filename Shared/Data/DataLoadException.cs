namespace CondenseCluster.Shared.Data;

/// <summary>A sample could not be loaded in the background; the message names the dataset and the sample, the inner exception the cause.</summary>
public sealed class DataLoadException(string message, Exception inner) : Exception(message, inner);
