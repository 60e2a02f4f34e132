using System.Security.Cryptography;

namespace CondenseCluster.Shared.Model;

/// <summary>The short digest that replicas, masks and jobs are compared and named by: 64 bits of SHA-256, as 16 lower-case hex digits.</summary>
public static class ShortDigest
{
    public static string Of(Action<IncrementalHash> append)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        append(hash);
        return Convert.ToHexStringLower(hash.GetHashAndReset())[..16];
    }
}
