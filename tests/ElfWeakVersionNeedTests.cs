using System.Reflection;
using System.Text;
using CondenseCluster.Build;
using Xunit;

namespace CondenseCluster.Tests;

public class ElfWeakVersionNeedTests
{
    const string Version = "GLIBCXX_3.4.32";

    [Fact]
    public void MarksOnlyTheNamedRequirementWeakAndIsANoOpTheSecondTime()
    {
        var (elf, flagOffsets) = SmallElf("libstdc++.so.6", [Version, "GLIBCXX_3.4"]);
        var original = (byte[])elf.Clone();

        Assert.Equal(ElfPatchOutcome.Patched, ElfWeakVersionNeed.MarkWeak(elf, Version));
        Assert.Equal(0x2, BitConverter.ToUInt16(elf, flagOffsets[0]));
        Assert.Equal(0, BitConverter.ToUInt16(elf, flagOffsets[1]));
        var changed = Enumerable.Range(0, elf.Length).Where(i => elf[i] != original[i]).ToArray();
        Assert.Equal([flagOffsets[0]], changed);

        var patched = (byte[])elf.Clone();
        Assert.Equal(ElfPatchOutcome.AlreadyWeak, ElfWeakVersionNeed.MarkWeak(elf, Version));
        Assert.Equal(patched, elf);
    }

    [Fact]
    public void ALibraryThatDoesNotNeedTheVersionIsLeftAlone()
    {
        var (elf, _) = SmallElf("libstdc++.so.6", ["GLIBCXX_3.4"]);
        var original = (byte[])elf.Clone();
        Assert.Equal(ElfPatchOutcome.VersionNotRequired, ElfWeakVersionNeed.MarkWeak(elf, Version));
        Assert.Equal(original, elf);
    }

    [Fact]
    public void NonElfAndTruncatedFilesAreRefused()
    {
        var notElf = Assert.Throws<InvalidDataException>(() => ElfWeakVersionNeed.MarkWeak(Encoding.ASCII.GetBytes(new string('x', 100)), Version));
        Assert.Contains("magic", notElf.Message);
        var (elf, _) = SmallElf("libstdc++.so.6", [Version]);
        var truncated = Assert.Throws<InvalidDataException>(() => ElfWeakVersionNeed.MarkWeak(elf[..(elf.Length - 70)], Version));
        Assert.Contains("truncated", truncated.Message);
    }

    [Fact]
    public void TheBuildOutputCopyOfTorchSharpIsTheNuGetLibraryWithOnlyThatFlagSet()
    {
        string output = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        string packageRoot = typeof(ElfWeakVersionNeedTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .Single(a => a.Key == "NuGetPackageRoot").Value!;
        string shipped = Path.Combine(packageRoot, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");

        byte[] built = File.ReadAllBytes(output);
        Assert.Equal(ElfPatchOutcome.AlreadyWeak, ElfWeakVersionNeed.MarkWeak((byte[])built.Clone(), Version));

        byte[] original = File.ReadAllBytes(shipped);
        Assert.Equal(ElfPatchOutcome.Patched, ElfWeakVersionNeed.MarkWeak(original, Version));
        Assert.Equal(built, original);
    }

    [Fact]
    public void PatchingAFileInPlaceRewritesItOnlyWhenNeeded()
    {
        var (elf, flagOffsets) = SmallElf("libstdc++.so.6", [Version]);
        string path = Path.Combine(Path.GetTempPath(), $"elf-{Guid.NewGuid():N}.so");
        try
        {
            File.WriteAllBytes(path, elf);
            Assert.Equal(ElfPatchOutcome.Patched, ElfWeakVersionNeed.MarkWeakInFile(path, Version));
            Assert.Equal(0x2, BitConverter.ToUInt16(File.ReadAllBytes(path), flagOffsets[0]));
            var written = File.GetLastWriteTimeUtc(path);
            File.SetLastWriteTimeUtc(path, written.AddHours(-1));
            Assert.Equal(ElfPatchOutcome.AlreadyWeak, ElfWeakVersionNeed.MarkWeakInFile(path, Version));
            Assert.Equal(written.AddHours(-1), File.GetLastWriteTimeUtc(path));
        }
        finally { File.Delete(path); }
    }

    /// <summary>
    /// A minimal 64-bit little-endian ELF with a .dynstr and a .gnu.version_r that requires the given versions of one
    /// library. Returns the file and the offsets of each Vernaux entry's vna_flags.
    /// </summary>
    static (byte[] Elf, int[] FlagOffsets) SmallElf(string library, string[] versions)
    {
        var strings = new MemoryStream();
        strings.WriteByte(0);
        int Add(string s) { int at = (int)strings.Length; strings.Write(Encoding.ASCII.GetBytes(s + "\0")); return at; }
        int fileName = Add(library);
        int[] names = versions.Select(Add).ToArray();

        const int headerSize = 64, dynstrOffset = 64;
        byte[] dynstr = strings.ToArray();
        int verneedOffset = (dynstrOffset + dynstr.Length + 7) & ~7;
        int verneedSize = 16 + 16 * versions.Length;
        int sectionTable = (verneedOffset + verneedSize + 7) & ~7;
        var elf = new byte[sectionTable + 3 * 64];

        "\u007fELF"u8.CopyTo(elf);
        elf[4] = 2; elf[5] = 1; elf[6] = 1;                   // 64-bit, little-endian, version 1
        Put16(elf, 0x10, 3); Put16(elf, 0x12, 62); Put32(elf, 0x14, 1); // ET_DYN, x86-64
        Put64(elf, 0x28, (ulong)sectionTable);
        Put16(elf, 0x34, headerSize); Put16(elf, 0x3A, 64); Put16(elf, 0x3C, 3);
        dynstr.CopyTo(elf, dynstrOffset);

        // Verneed: version 1, count, file name, first aux at +16, no next.
        Put16(elf, verneedOffset, 1); Put16(elf, verneedOffset + 2, (ushort)versions.Length);
        Put32(elf, verneedOffset + 4, (uint)fileName); Put32(elf, verneedOffset + 8, 16);
        var flagOffsets = new int[versions.Length];
        for (int i = 0; i < versions.Length; i++)
        {
            int aux = verneedOffset + 16 + 16 * i;
            Put32(elf, aux, 0x0bad0000u + (uint)i);         // hash (not checked by the patch)
            flagOffsets[i] = aux + 4;
            Put16(elf, aux + 6, (ushort)(2 + i));            // vna_other: version index
            Put32(elf, aux + 8, (uint)names[i]);
            Put32(elf, aux + 12, i == versions.Length - 1 ? 0u : 16u);
        }

        WriteSection(elf, sectionTable + 64, type: 3, offset: dynstrOffset, size: dynstr.Length, link: 0, info: 0);
        WriteSection(elf, sectionTable + 128, type: 0x6ffffffe, offset: verneedOffset, size: verneedSize, link: 1, info: 1);
        return (elf, flagOffsets);
    }

    static void WriteSection(byte[] elf, int at, uint type, int offset, int size, uint link, uint info)
    {
        Put32(elf, at + 4, type);
        Put64(elf, at + 0x18, (ulong)offset);
        Put64(elf, at + 0x20, (ulong)size);
        Put32(elf, at + 0x28, link);
        Put32(elf, at + 0x2C, info);
    }

    static void Put16(byte[] b, int at, ushort v) => BitConverter.TryWriteBytes(b.AsSpan(at), v);
    static void Put32(byte[] b, int at, uint v) => BitConverter.TryWriteBytes(b.AsSpan(at), v);
    static void Put64(byte[] b, int at, ulong v) => BitConverter.TryWriteBytes(b.AsSpan(at), v);
}
