namespace CondenseCluster.Shared.Storage;

/// <summary>
/// CRC-32C (Castagnoli), the checksum of TFRecord framing, and the "masked" form TFRecord stores: a CRC of data that
/// itself contains CRCs is weak, so the stored value is rotated and offset.
/// </summary>
public static class Crc32C
{
    const uint Polynomial = 0x82F63B78; // 0x1EDC6F41 bit-reversed: the CRC is computed least significant bit first.
    const uint MaskDelta = 0xA282EAD8;

    static readonly uint[] Table = BuildTable();

    static uint[] BuildTable()
    {
        var table = new uint[256];
        for (uint i = 0; i < 256; i++)
        {
            uint crc = i;
            for (int bit = 0; bit < 8; bit++) crc = (crc & 1) != 0 ? (crc >> 1) ^ Polynomial : crc >> 1;
            table[i] = crc;
        }
        return table;
    }

    public static uint Compute(ReadOnlySpan<byte> data)
    {
        uint crc = ~0u;
        foreach (byte b in data) crc = Table[(crc ^ b) & 0xFF] ^ (crc >> 8);
        return ~crc;
    }

    /// <summary>The CRC as TFRecord stores it.</summary>
    public static uint Masked(ReadOnlySpan<byte> data)
    {
        uint crc = Compute(data);
        return unchecked(((crc >> 15) | (crc << 17)) + MaskDelta);
    }
}
