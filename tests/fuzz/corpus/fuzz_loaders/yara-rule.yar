
rule Demo { meta: author = "khien" strings: $a = "EICAR" $b = { 4d 5a ?? 00 } condition: $a or ($b at 0 and filesize < 1MB) }
