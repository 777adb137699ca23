/* mb_adu.h: what the Modbus unit tests share: the transaction id and unit of their ADUs,
 * and a check that an encoded ADU is MBAP(TID, UNIT) followed by exactly a given PDU. */
#ifndef KOMD_TEST_MB_ADU_H
#define KOMD_TEST_MB_ADU_H

#include <stdint.h>
#include <string.h>

#define TID 0x1234
#define UNIT 0x11

/* Does the ADU (len bytes) hold MBAP(TID, UNIT) followed by exactly the PDU? */
static inline int
adu_is(const uint8_t *adu, size_t len, const uint8_t *pdu, size_t plen)
{
	uint8_t hdr[7] = { TID >> 8, TID & 0xff, 0, 0, (uint8_t)((plen + 1) >> 8), (uint8_t)(plen + 1), UNIT };

	return len == 7 + plen && memcmp(adu, hdr, 7) == 0 && memcmp(adu + 7, pdu, plen) == 0;
}

#endif
