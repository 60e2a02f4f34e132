using System.Security.Cryptography;
using System.Text;

namespace CondenseCluster.Coordinator.Control;

/// <summary>
/// The bearer token of the control API and the dashboard's controls. Taken from <see cref="EnvironmentVariable"/>,
/// else from a token file; when neither is set, one is generated on first start and saved to the default file
/// (readable by its owner only), where the CLI on the same machine finds it.
/// </summary>
public sealed class ControlToken
{
    public const string EnvironmentVariable = "CONDENSE_CONTROL_TOKEN";

    public static string DefaultFile =>
        Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.ApplicationData, Environment.SpecialFolderOption.Create), "condense-cluster", "control-token");

    readonly byte[] expected;

    ControlToken(string value) => expected = Encoding.UTF8.GetBytes(value);

    /// <summary>The coordinator's token; <paramref name="announce"/> hears where it came from (and a new one, once).</summary>
    public static ControlToken Resolve(string? file, Action<string> announce)
    {
        if (Environment.GetEnvironmentVariable(EnvironmentVariable) is { Length: > 0 } fromEnvironment)
        {
            announce($"control token from ${EnvironmentVariable}");
            return new ControlToken(fromEnvironment.Trim());
        }
        string path = file ?? DefaultFile;
        if (File.Exists(path))
        {
            string stored = File.ReadAllText(path).Trim();
            if (stored.Length == 0) throw new ArgumentException($"the control token file {path} is empty: write a token into it, or delete it to have one generated");
            announce($"control token from {path}");
            return new ControlToken(stored);
        }
        if (file is not null) throw new ArgumentException($"--token-file {file} does not exist: create it with a token, or leave the option out to have one generated");
        string generated = Convert.ToHexString(RandomNumberGenerator.GetBytes(24)).ToLowerInvariant();
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        // Written aside and moved into place, so that a coordinator starting at the same moment reads a whole token.
        string aside = $"{path}.{Environment.ProcessId}.tmp";
        File.WriteAllText(aside, "");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(aside, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.WriteAllText(aside, generated + "\n");
        try { File.Move(aside, path); }
        catch (IOException) when (File.Exists(path))
        {
            File.Delete(aside);
            return Resolve(file, announce); // another coordinator generated it first
        }
        announce($"control token generated: {generated} (saved to {path}; the CLI reads it from there, or pass --token)");
        return new ControlToken(generated);
    }

    /// <summary>Does an "authorization" header carry this token? Compared in constant time.</summary>
    public bool Accepts(string? authorization) =>
        authorization is not null && authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) &&
        CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(authorization["Bearer ".Length..].Trim()), expected);

    /// <summary>Why a request is refused, for the error it gets.</summary>
    public static string Refusal(string? authorization) => authorization is null
        ? $"no bearer token: send \"authorization: Bearer <token>\" (the CLI takes --token, ${EnvironmentVariable} or the token file)"
        : "the bearer token is wrong: use the token the coordinator printed or saved at its start";
}
