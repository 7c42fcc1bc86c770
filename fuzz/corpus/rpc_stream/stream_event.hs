‚§Command¦stream£Seq
¤Type¡*‚§Command¦stream£Seq
¤Type¤user‚§Command¦stream£Seq¤Type¹user:deploy,member-update‚§Command¦stream£Seq¤Type«bogus-event‚§Command¥event£Seqƒ¤Name¦deploy§PayloadÄ9c45b87¨CoalesceÃ